// Tests of the certificate, password-file and load-generator tools.
