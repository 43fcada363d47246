from services.trial_runner.app import main

main()
