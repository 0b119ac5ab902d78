"""Migration from other stores: mbox, Maildir, a remote IMAP server, POP-only accounts."""
