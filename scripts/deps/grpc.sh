# Stock gRPC clients that okey did not write, driving a real `okey serve` in the end-to-end tests
# (tests/py/stock_client.py): Python grpcio, its reflection client and the standard health client.
need_pip grpc grpcio
need_pip grpc_reflection grpcio-reflection
need_pip grpc_health grpcio-health-checking
