"""The destination pipeline (DESIGN §2): the stages an event goes through on its way to one destination."""
