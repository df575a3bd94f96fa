from taxifare.cli import main

if __name__ == "__main__":  # not when a worker process started by multiprocessing imports this module
    main()
