"""Boot tests: the built disk image under QEMU (KVM when it works, TCG otherwise)."""
