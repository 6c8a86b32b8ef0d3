from neurosleuth.agents.cli import main

main()
