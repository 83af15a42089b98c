from coldvault.cli import main

raise SystemExit(main())
