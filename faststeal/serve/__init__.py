"""The model owner's HTTP service (FastAPI + uvicorn), its budget ledger and API keys (the thief's client is
faststeal.targets.http).

The process boundary is what makes the target a black box: the server holds the weights, the ledger holds
the budget, and a client sees only images, headers and JSON errors.
"""
