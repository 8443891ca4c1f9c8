"""The ramdisk agent. It talks to the API over HTTP only and imports nothing server-side."""
