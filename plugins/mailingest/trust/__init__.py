"""Sender trust, the pure part: Authentication-Results parsing, DMARC alignment, allow-lists,
machine-mail classification, the verdict and the policy decision.

Nothing here touches the network: DNS answers come in through a lookup function that the
caller (:mod:`mailingest.verify`, one layer up) supplies.  See docs/trust.md.
"""
