from release.cli import main

raise SystemExit(main())
