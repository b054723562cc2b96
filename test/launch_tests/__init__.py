"""launch_testing tests of every bring-up (launch/*.launch.py); see common.py."""
