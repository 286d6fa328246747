"""nft text front-ends: iptables-nft rulesets as ``nft list ruleset`` prints them."""
