"""Startup module of the RE Worker (``start-re-manager --startup-module``).

The queue server's contract is that the *globals of this module* are the worker's
namespace: it imports the module each time the environment opens (in a fresh worker
process) and copies its ``__dict__``. So, unlike everywhere else in beampod, module
globals are the point here; nothing else imports this module.
"""

from beampod.queue._namespace import worker_namespace as _worker_namespace

globals().update(_worker_namespace())
del _worker_namespace
