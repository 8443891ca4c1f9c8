"""The virtual rack used by the demo and the tests. Not built yet."""
