"""What ``callback mailingest.poll`` (:mod:`mailingest.poll`) needs below the sr3 glue (layer 4).

* :mod:`~mailingest.poller.listing`     what is new in a folder (IMAP) or maildrop (POP3)
* :mod:`~mailingest.poller.state`       what was announced, on disk, so a restart announces nothing twice
* :mod:`~mailingest.poller.reannounce`  when to announce a message again (``mailReannounceAfter``)
* :mod:`~mailingest.poller.pacing`      how sr3 paces the poll callback (``mailIdle``)
* :mod:`~mailingest.poller.follower`    a passive node follows the active node's notices (sr3 ``vip``)
* :mod:`~mailingest.poller.ha`          the poll lease and the state hand-over between nodes (sr3 ``vip``)
"""
