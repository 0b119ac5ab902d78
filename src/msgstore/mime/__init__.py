"""Parse once, at delivery: ENVELOPE, BODY, BODYSTRUCTURE, the part map and the search header
index, computed from the raw bytes and stored beside the message. Nothing on a read path parses
MIME again."""
