import sys

from lm_eval_abo.cli import main

sys.exit(main())
