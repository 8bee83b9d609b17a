"""Code shared by every zmx process: configuration, protocol, types, logging, the CLI."""
