"""The document bus: one codec and one behavioural contract for every transport."""

from beampod.bus._codec import DOCUMENT_NAMES, DecodeError, decode, encode, message_id, run_uid_of

__all__ = ["DOCUMENT_NAMES", "DecodeError", "decode", "encode", "message_id", "run_uid_of"]
