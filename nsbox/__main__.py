from nsbox.client import main

main()
