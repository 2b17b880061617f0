"""What ``callback mailingest.download`` (:mod:`mailingest.download`) needs below the sr3 glue (layer 4).

* :mod:`~mailingest.fetcher.sessions`  kept connections, one per account, reconnecting with a backoff
* :mod:`~mailingest.fetcher.actions`   what to do on the server once the file is safe (``mailAfterDownload``)
* :mod:`~mailingest.fetcher.diskwait`  waiting out a download directory that cannot be written
"""
