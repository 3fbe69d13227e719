import sys

from zaoxiang.cli import main

sys.exit(main())
