"""shopkeys: OAuth connections to AliExpress, TikTok Shop, SHOPLINE and Ecwid, kept valid."""

__version__ = "0.1.0"
