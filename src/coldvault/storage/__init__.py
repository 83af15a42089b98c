"""Stores: where repository objects live (memory, local directories; clouds later)."""

from coldvault.storage.handle import Handle, Kind
from coldvault.storage.local import LocalStore
from coldvault.storage.memory import MemoryStore
from coldvault.storage.protocol import Capabilities, ObjectInfo, PutMode, Store

__all__ = ["Capabilities", "Handle", "Kind", "LocalStore", "MemoryStore", "ObjectInfo", "PutMode", "Store"]
