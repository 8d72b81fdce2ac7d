# oathtool: the independent OTP implementation the calculator is checked against.
need_deb oathtool oathtool
