import sys

from smartcity.cli import main

sys.exit(main())
