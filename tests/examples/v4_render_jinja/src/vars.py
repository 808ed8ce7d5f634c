closing = "Regards"
