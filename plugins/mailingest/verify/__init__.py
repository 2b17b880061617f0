"""Sender verification that needs the network: TXT lookups through a resolver the operator can
point at (dnspython), DKIM and ARC verification (dkimpy), and the assessment of one message
(verdict and class) built from :mod:`mailingest.trust`'s pure logic.  See docs/trust.md."""
