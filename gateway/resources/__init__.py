"""The REST resources: small classes whose responders declare their Operation."""
