"""Records and the profile schema. No I/O besides reading profile files."""
