from stoker_runner.runner import main

raise SystemExit(main())
