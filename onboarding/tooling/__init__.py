"""Local tooling (dev server, secrets, Smile stand-in, simulator): imports anything but the CLI."""
