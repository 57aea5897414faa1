from ldm_lab.cli import main

raise SystemExit(main())
