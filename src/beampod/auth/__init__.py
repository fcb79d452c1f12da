"""Local authentication helpers (who is on the other end of a loopback socket)."""
