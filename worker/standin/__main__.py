import sys

from worker.standin.cli import main

sys.exit(main())
