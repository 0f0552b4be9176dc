"""The editor's front end: the LSP protocol translated to and from the fix service."""
