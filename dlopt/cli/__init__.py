"""The thin CLI: parse options, call one library function, render the result."""
