"""spaces/families."""
