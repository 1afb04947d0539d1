from ravlt.predict.cli import main

main()
