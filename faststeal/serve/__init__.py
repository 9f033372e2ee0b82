"""The model owner's HTTP service (FastAPI + uvicorn) and the thief's client for it.

The process boundary is what makes the target a black box: the server holds the weights, the ledger holds
the budget, and a client sees only images, headers and JSON errors.
"""
