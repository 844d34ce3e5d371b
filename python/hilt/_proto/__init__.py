"""gRPC stubs generated from ``proto/hilt/v1`` when the package is built
(``setup.py``); nothing else lives here, and nothing here is edited by
hand."""
