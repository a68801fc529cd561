"""ackhub: the interagency data-exchange and acknowledgement hub."""

__version__ = "0.1.0"
