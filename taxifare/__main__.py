from taxifare.cli import main

main()
