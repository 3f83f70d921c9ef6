"""The signed API proxy: an app's call goes to the platform with the connection's credentials
added the platform's way, and the answer streams back."""

from shopkeys.proxy.call import ApiCall, BadPath, call_path
from shopkeys.proxy.forward import ApiProxy, PlatformTimeout, PlatformUnreachable, ProxiedAnswer
from shopkeys.proxy.pacing import CallPacer

__all__ = [
    "ApiCall",
    "ApiProxy",
    "BadPath",
    "CallPacer",
    "PlatformTimeout",
    "PlatformUnreachable",
    "ProxiedAnswer",
    "call_path",
]
