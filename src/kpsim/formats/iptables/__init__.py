"""The iptables front-end: iptables-save / -S / -L text into the rule model, and back.

save.py (+ fast.py, the hot path) and rule.py read save/-S lines; listing*.py read -L
in any variant; matches.py / targets.py / options.py / tokens.py are the shared grammar;
write.py prints a Ruleset as iptables-restore input."""
