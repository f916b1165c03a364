"""Where rules act: an offline rootfs (every path confined to it) or the live host."""
