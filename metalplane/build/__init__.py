"""Building what nodes boot from Debian packages: the agent's ramdisk (kernel + initramfs).

Runs on the operator's machine as root (mmdebstrap, chroot, apt-get), caches its results by
a content hash of their inputs, and imports nothing of the server: the results are files the
boot server serves (``<data_dir>/files``).
"""
