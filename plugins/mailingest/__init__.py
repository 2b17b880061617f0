"""mailingest: e-mail as a first-class Sarracenia (sr3) source.

Callbacks (see docs/configuration.md):

* ``callback mailingest.poll``      list unread mail, publish one notice per message
* ``callback mailingest.download``  fetch the raw RFC 822 message a notice names
* ``callback mailingest.decode``    split a downloaded message into body and attachments
"""

__version__ = "0.2.0.dev0"
