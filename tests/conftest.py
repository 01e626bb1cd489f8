import sys
from pathlib import Path

# Make the independent reference helpers in tests/ importable.
sys.path.insert(0, str(Path(__file__).parent))
