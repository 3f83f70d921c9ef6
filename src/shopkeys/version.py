"""The release's version, in a module of its own so that anything may name it without importing the
package's face (which hands out the client)."""

__version__ = "0.1.0"
