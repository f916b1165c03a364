"""Build steps: bootstrap and base cache, packages and minimise, finalize, inventory, export."""
