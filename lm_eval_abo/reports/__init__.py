"""What people read: the run's console lines and report.md, lm-eval results files, leaderboards, the CI
regression gate and the paper-table's markdown."""
