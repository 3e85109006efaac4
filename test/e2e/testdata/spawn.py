# C6: a Python program trying to start a helper gets an exception it can
# handle, and carries on.
import subprocess
import sys

try:
    subprocess.run(["/bin/true"], check=True)
    print("subprocess: SUCCEEDED")
except PermissionError as e:
    print("subprocess: PermissionError", e.errno)
except OSError as e:
    print("subprocess: OSError", e.errno)
try:
    import os
    os.system("true")
    print("os.system: returned")
except Exception as e:  # noqa: BLE001
    print("os.system:", type(e).__name__)
print("still running")
sys.exit(0)
