"""The decoder: raw RFC 822 bytes -> bodies, attachments and ``metadata.json`` on disk.

The pure core (layer 1): no ``sarracenia`` import, no network.  Used by ``callback mailingest.decode``
(:mod:`mailingest.decode`) and ``mailingest decode`` (:mod:`mailingest.cli.decode`).

* :mod:`~mailingest.mime.parse`      walk the parsed tree into a :class:`~mailingest.mime.parse.DecodedMail`
* :mod:`~mailingest.mime.headers`    the parser policy, header values and part names, bounded
* :mod:`~mailingest.mime.payloads`   the decoded bytes of one part, where the email package needs help
* :mod:`~mailingest.mime.safenames`  sender-supplied names -> safe, unique file names
* :mod:`~mailingest.mime.writer`     files inside one directory: atomic, no symlink, no overwrite
* :mod:`~mailingest.mime.layout`     one ``.eml`` -> ``x.parts/`` (``decode_file``)
* :mod:`~mailingest.mime.decoded`    find the complete parts directory an earlier decode made
* :mod:`~mailingest.mime.journal`    pending decodes, so a decode survives its worker's crash
"""
